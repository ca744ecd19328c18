//! `steel`: the one command line of the Steel pipeline. It parses arguments, calls the
//! library crates and prints their summaries; all logic lives in the crates.

mod run_cmd;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use steel_dataflow::bench::{ConvertBenchOptions, PackBenchOptions, bench_convert, bench_pack};
use steel_dataflow::clean::bench::{CleanBenchOptions, bench_clean};
use steel_dataflow::clean::filters::Resources;
use steel_dataflow::clean::lm::Unit;
use steel_dataflow::clean::lm::train::train_documents;
use steel_dataflow::clean::recipe::Recipe;
use steel_dataflow::clean::run::{CleanOptions, clean};
use steel_dataflow::convert::{ConvertOptions, convert};
use steel_dataflow::demo_data::{DemoDataOptions, DocKind, Truth, generate, read_truth};
use steel_dataflow::output::OutputFormat;
use steel_dataflow::pack::tokenizer::{read_texts, train};
use steel_dataflow::pack::{PackOptions, PackSummary, pack};
use steel_dataflow::sources::FormatChoice;
use steel_trainer::bench::{BenchTrainOptions, bench_train};
use steel_trainer::checkpoint::{export_hf, load_model};
use steel_trainer::data::bench::bench_loader;
use steel_trainer::data::{DataSource, Loader, LoaderState};
use steel_trainer::eval::evaluate;
use steel_trainer::model::config::ModelConfig;
use steel_trainer::optim::adamw::AdamWConfig;
use steel_trainer::optim::schedule::Schedule;
use steel_trainer::train::{Nodes, StepMetrics, TrainOptions, Validation, train as train_model};

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
    /// Step 2: clean unified documents with a data-juicer recipe and report what each rule did.
    Clean(CleanArgs),
    /// The incremental pipeline: convert, clean and deduplicate new files against the
    /// persisted state of every earlier run (timely/differential dataflow).
    Run(run_cmd::RunArgs),
    /// Take a source's documents back out of a pipeline's results (a negative change).
    Retract(run_cmd::RetractArgs),
    /// What a pipeline's state directory holds.
    Status(run_cmd::StatusArgs),
    /// N-gram language models for perplexity_filter.
    #[command(subcommand)]
    Lm(LmCommand),
    /// Step 3: tokenize unified documents and pack them into LITPKDS chunk files.
    Pack(PackArgs),
    /// Tokenizer tools.
    #[command(subcommand)]
    Tokenizer(TokenizerCommand),
    /// Train a model on packed chunks (CPU reference).
    Train(Box<TrainArgs>),
    /// Mean next-token loss of a checkpoint over a chunk directory.
    Eval(EvalArgs),
    /// Write a checkpoint as a HuggingFace model directory.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Start training from a HuggingFace model directory.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Show the blocks the training loader serves (one xxh3 per block), saving or resuming
    /// its state: for checking resume, appends and rank sharding from the shell.
    Blocks(BlocksArgs),
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
struct CleanArgs {
    /// A data-juicer recipe (YAML with a `process:` list), e.g.
    /// ../shared/data/recipes/steel_text.yaml.
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
enum LmCommand {
    /// Train a character (or word) n-gram model with modified Kneser-Ney smoothing and write
    /// it as ARPA.
    Train(LmTrainArgs),
}

#[derive(Args)]
struct LmTrainArgs {
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
struct PackArgs {
    /// A tokenizer.json (Qwen1.5's: ../shared/data/tokenizers/qwen1_5/tokenizer.json).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Chunk directory. Packing into one that has a manifest adds a new epoch of chunks.
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
    /// Epoch of the new chunks (default: one past the directory's last).
    #[arg(long)]
    epoch: Option<u64>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Unified document files, directories or globs (the output of `steel convert`).
    #[arg(required = true)]
    inputs: Vec<String>,
}

#[derive(Args)]
struct EvalArgs {
    /// A checkpoint (step-NNNNNNNN/) or any directory with config.json and model.safetensors.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The chunk directory to score.
    #[arg(long)]
    data: PathBuf,
    /// Score only the first N blocks (chunk files in lexicographic order).
    #[arg(long)]
    max_blocks: Option<u64>,
    /// Print {"loss", "tokens", "blocks"} as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ExportCommand {
    /// config.json + model.safetensors (+ tokenizer.json) that `transformers` loads:
    /// Qwen2ForCausalLM (dense), Qwen2MoeForCausalLM (top-k), or Steel's softmax-MoE through
    /// the modeling_steel.py written next to them (trust_remote_code=True).
    Hf(ExportHfArgs),
}

#[derive(Subcommand)]
enum ImportCommand {
    /// `steel import hf DIR [train flags]`: `steel train --init-from DIR`. Reads config.json in
    /// either style (`rope_theta` / `torch_dtype` or `rope_parameters` / `dtype`).
    Hf(Box<ImportHfArgs>),
}

#[derive(Args)]
struct ImportHfArgs {
    /// config.json + model.safetensors, from transformers or `steel export hf`.
    dir: PathBuf,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Args)]
struct ExportHfArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// The directory to write; must be empty or absent.
    #[arg(long)]
    output: PathBuf,
    /// A tokenizer.json to ship with the model.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
}

#[derive(Args)]
struct TrainArgs {
    /// A TOML file with any of the settings below (same names, snake_case); flags given on
    /// the command line win. Paths in it are relative to the file.
    config: Option<PathBuf>,
    /// Model preset: tiny-dense, tiny-softmax-moe, tiny-topk-moe, steel-1b, dense-1b,
    /// topk-moe-2b [default: tiny-dense].
    #[arg(long)]
    preset: Option<String>,
    /// Override the preset's vocabulary size (it must cover the tokenizer the chunks used).
    #[arg(long)]
    vocab_size: Option<usize>,
    /// Take the vocabulary size from this tokenizer.json.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Start from a HuggingFace model directory (config.json + model.safetensors), e.g. one
    /// `steel export hf` wrote or transformers saved, instead of a preset.
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// A chunk directory, optionally with a mixture weight: DIR or DIR:WEIGHT. Repeatable.
    #[arg(long)]
    data: Vec<String>,
    /// Tokens per training sequence [default: the first chunk directory's block size].
    #[arg(long)]
    seq: Option<u64>,
    /// Optimizer steps.
    #[arg(long)]
    steps: Option<u64>,
    /// Sequences per optimizer step [default: 4].
    #[arg(long)]
    micro_batch: Option<usize>,
    /// Peak learning rate [default: 3e-3].
    #[arg(long)]
    lr: Option<f32>,
    /// Final learning rate [default: lr / 10].
    #[arg(long)]
    min_lr: Option<f32>,
    /// Warm-up steps [default: a tenth of the steps].
    #[arg(long)]
    warmup: Option<u64>,
    /// cosine (decay after warm-up) or wsd (flat, then linear decay over --decay-steps)
    /// [default: cosine].
    #[arg(long)]
    schedule: Option<String>,
    /// Decay steps of the wsd schedule [default: a fifth of the steps].
    #[arg(long)]
    decay_steps: Option<u64>,
    /// AdamW weight decay (not on norms and biases) [default: 0.1].
    #[arg(long)]
    weight_decay: Option<f32>,
    /// Clip gradients to this global norm [default: 1.0].
    #[arg(long)]
    clip: Option<f32>,
    /// Run directory: metrics.jsonl, loss.svg, step-NNNNNNNN/ checkpoints.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the newest checkpoint of a run directory: --resume DIR, or --resume with
    /// --out.
    #[arg(long, num_args = 0..=1, value_name = "DIR")]
    resume: Option<Option<PathBuf>>,
    /// Write a checkpoint every N steps (and at the end) [default: 100].
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Checkpoints to keep [default: 3].
    #[arg(long)]
    keep: Option<usize>,
    /// Held-out chunk directory scored every --eval-every steps; the best checkpoint is kept
    /// in best/.
    #[arg(long)]
    val_data: Option<PathBuf>,
    /// [default: 100]
    #[arg(long)]
    eval_every: Option<u64>,
    /// Score only the first N validation blocks.
    #[arg(long)]
    val_blocks: Option<u64>,
    /// [default: 42]
    #[arg(long)]
    seed: Option<u64>,
    /// Where steps run: cpu, cuda (one GPU, flash attention) or cuda:cublas (cuBLAS
    /// attention); cuda needs a binary built with `--features cuda` [default: cpu].
    #[arg(long)]
    device: Option<String>,
    /// Data-parallel ranks, each with its own loader shard and --micro-batch sequences per
    /// step, gradients summed across ranks (CPU: threads; GPU: not yet) [default: 1].
    #[arg(long)]
    nproc: Option<usize>,
    /// Nodes (or processes) of a multi-node run, each started with its --node-rank.
    #[arg(long, default_value_t = 1)]
    nnodes: usize,
    /// This node's index, 0..nnodes (node 0 hosts rank 0, which the others connect to).
    #[arg(long, default_value_t = 0)]
    node_rank: usize,
    /// Address of node 0 (where rank 0 listens).
    #[arg(long, default_value = "127.0.0.1")]
    master_addr: String,
    /// Port rank 0 listens on.
    #[arg(long, default_value_t = 29500)]
    master_port: u16,
}

/// `--nnodes` and friends as the trainer's `Nodes` (None for one node).
fn nodes(args: &TrainArgs) -> Result<Option<Nodes>> {
    anyhow::ensure!(
        args.nnodes > 0 && args.node_rank < args.nnodes,
        "--node-rank {} is not one of --nnodes {}",
        args.node_rank,
        args.nnodes
    );
    Ok((args.nnodes > 1).then(|| Nodes {
        nnodes: args.nnodes,
        node_rank: args.node_rank,
        master: format!("{}:{}", args.master_addr, args.master_port),
    }))
}

/// `steel train CONFIG.toml`: the same settings as the flags.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainFile {
    preset: Option<String>,
    vocab_size: Option<usize>,
    tokenizer: Option<PathBuf>,
    init_from: Option<PathBuf>,
    #[serde(default)]
    data: Vec<String>,
    seq: Option<u64>,
    steps: Option<u64>,
    micro_batch: Option<usize>,
    lr: Option<f32>,
    min_lr: Option<f32>,
    warmup: Option<u64>,
    schedule: Option<String>,
    decay_steps: Option<u64>,
    weight_decay: Option<f32>,
    clip: Option<f32>,
    out: Option<PathBuf>,
    checkpoint_every: Option<u64>,
    keep: Option<usize>,
    val_data: Option<PathBuf>,
    eval_every: Option<u64>,
    val_blocks: Option<u64>,
    seed: Option<u64>,
    device: Option<String>,
    nproc: Option<usize>,
}

#[derive(Args)]
struct BlocksArgs {
    /// A chunk directory, optionally with a mixture weight: DIR or DIR:WEIGHT. Repeatable.
    #[arg(long, required = true)]
    data: Vec<String>,
    /// Tokens per block (each block is block size + 1 tokens).
    #[arg(long)]
    block_size: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// This data-parallel rank.
    #[arg(long, default_value_t = 0)]
    rank: usize,
    /// Number of data-parallel ranks.
    #[arg(long, default_value_t = 1)]
    world: usize,
    /// Continue from a state file written by --save.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Pick up chunks added to the directories since the state was saved.
    #[arg(long)]
    add_new_chunks: bool,
    /// How many blocks to serve.
    #[arg(long)]
    take: u64,
    /// Write the loader state here afterwards.
    #[arg(long)]
    save: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TokenizerCommand {
    /// Train a byte-level BPE with the Qwen special tokens, for small experiments.
    Train(TokenizerTrainArgs),
}

#[derive(Args)]
struct TokenizerTrainArgs {
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
    /// Tokenisation and packing throughput with the Qwen tokenizer at each thread count.
    Pack(BenchPackArgs),
    /// Cleaning throughput of a recipe over the text samples scaled up, and per operator.
    Clean(BenchCleanArgs),
    /// `steel run`: a full run against appending 1% to a state of the other 99%.
    Incremental(run_cmd::BenchIncrementalArgs),
    /// Training throughput of a preset on random tokens: tokens/s, MFU, peak GPU memory.
    Train(BenchTrainArgs),
}

#[derive(Args)]
struct BenchTrainArgs {
    /// Model preset (see `steel train --preset`).
    #[arg(long, default_value = "tiny-dense")]
    preset: String,
    /// cpu, cuda (flash attention) or cuda:cublas.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Sequences per step.
    #[arg(long, default_value_t = 4)]
    micro_batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 2048)]
    seq: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
}

#[derive(Args)]
struct BenchCleanArgs {
    /// Directory of sample files.
    #[arg(long, default_value = "../shared/data/steel-samples")]
    samples: PathBuf,
    /// The recipe to measure.
    #[arg(long, default_value = "../shared/data/recipes/steel_text.yaml")]
    recipe: PathBuf,
    /// Scratch directory (inputs are made once and reused).
    #[arg(long, default_value = "target/bench-clean")]
    work: PathBuf,
    /// Copies of the converted text samples (9.5 MB each) in the input.
    #[arg(long, default_value_t = 22)]
    copies: usize,
    /// Copies in the input of the per-operator runs.
    #[arg(long, default_value_t = 2)]
    op_copies: usize,
    /// Thread counts to measure the whole recipe at, comma separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    threads_list: Vec<usize>,
    /// Skip the per-operator runs.
    #[arg(long)]
    no_per_op: bool,
    /// Leave these operators out of the recipe (comma separated), e.g. perplexity_filter to
    /// compare with a data-juicer that cannot download its model.
    #[arg(long, value_delimiter = ',')]
    without: Vec<String>,
}

#[derive(Args)]
struct BenchPackArgs {
    /// Directory of sample files.
    #[arg(long, default_value = "../shared/data/steel-samples")]
    samples: PathBuf,
    /// The tokenizer to pack with.
    #[arg(
        long,
        default_value = "../shared/data/tokenizers/qwen1_5/tokenizer.json"
    )]
    tokenizer: PathBuf,
    /// Scratch directory.
    #[arg(long, default_value = "target/bench-pack")]
    work: PathBuf,
    /// Copies of the converted samples in the input.
    #[arg(long, default_value_t = 4)]
    copies: usize,
    /// Thread counts to measure, comma separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    threads_list: Vec<usize>,
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
        Command::Clean(args) => run_clean(args, cli.threads),
        Command::Run(args) => run_cmd::run_run(args),
        Command::Retract(args) => run_cmd::run_retract(args),
        Command::Status(args) => run_cmd::run_status(args),
        Command::Lm(LmCommand::Train(args)) => run_lm_train(args),
        Command::DemoData(args) => run_demo_data(args),
        Command::Pack(args) => run_pack(args),
        Command::Tokenizer(TokenizerCommand::Train(args)) => run_tokenizer_train(args),
        Command::Blocks(args) => run_blocks(args),
        Command::Train(args) => run_train(*args),
        Command::Eval(args) => run_eval(args),
        Command::Export(ExportCommand::Hf(args)) => run_export_hf(args),
        Command::Import(ImportCommand::Hf(args)) => {
            let ImportHfArgs { dir, mut train } = *args;
            train.init_from = Some(dir);
            run_train(train)
        }
        Command::Demo(args) => run_demo(args),
        Command::Bench(BenchCommand::Convert(args)) => run_bench_convert(args),
        Command::Bench(BenchCommand::Pack(args)) => run_bench_pack(args),
        Command::Bench(BenchCommand::Clean(args)) => run_bench_clean(args),
        Command::Bench(BenchCommand::Incremental(args)) => run_cmd::run_bench_incremental(args),
        Command::Bench(BenchCommand::Train(args)) => run_bench_train(args),
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

fn run_clean(args: CleanArgs, threads: Option<usize>) -> Result<()> {
    let recipe = Recipe::load(&args.recipe).map_err(anyhow::Error::msg)?;
    let mut options = CleanOptions::new(&args.recipe, &args.output);
    options.trace = args.trace;
    options.shard_bytes = args.shard_mb << 20;
    options.progress = !args.json;
    options.resources = Resources {
        lm_model: args.lm_model,
        hf_tokenizer: args.hf_tokenizer,
    };
    // The recipe's `np` is the thread count unless --threads says otherwise.
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

fn run_lm_train(args: LmTrainArgs) -> Result<()> {
    let unit = Unit::parse(&args.unit).map_err(anyhow::Error::msg)?;
    let (arpa, documents) =
        train_documents(&args.inputs, args.order, unit).map_err(anyhow::Error::msg)?;
    std::fs::write(&args.output, arpa)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "wrote {} ({}-gram {:?} model from {} documents)",
        args.output.display(),
        args.order,
        unit,
        documents
    );
    Ok(())
}

fn run_pack(args: PackArgs) -> Result<()> {
    let mut options = PackOptions::new(&args.tokenizer, &args.output);
    options.block_size = args.block_size;
    options.chunk_blocks = args.chunk_blocks;
    options.eos = args.eos;
    options.pad = args.pad;
    options.epoch = args.epoch;
    options.progress = true;
    let summary = pack(&args.inputs, &options).context("steel pack failed")?;
    print_pack_summary(&summary);
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}

fn print_pack_summary(summary: &PackSummary) {
    eprintln!(
        "epoch {}: {} docs in, {} packed, {} rejected; {} tokens + {} padding in {} chunks, {:.2}s ({:.0} tokens/s)\nmanifest: {}; rejects: {}",
        summary.epoch,
        summary.docs_in,
        summary.docs_packed,
        summary.rejected,
        summary.tokens,
        summary.padding,
        summary.chunks.len(),
        summary.seconds,
        summary.tokens as f64 / summary.seconds.max(1e-9),
        summary.manifest,
        summary.rejects_file
    );
}

fn run_tokenizer_train(args: TokenizerTrainArgs) -> Result<()> {
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

fn run_train(args: TrainArgs) -> Result<()> {
    let file: TrainFile = match &args.config {
        Some(path) => toml::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{} is not a valid training config", path.display()))?,
        None => TrainFile::default(),
    };
    // Paths in the file are relative to it.
    let base = args
        .config
        .as_ref()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let data: Vec<String> = if args.data.is_empty() {
        file.data
            .iter()
            .map(|spec| rel(PathBuf::from(spec)).display().to_string())
            .collect()
    } else {
        args.data.clone()
    };
    anyhow::ensure!(
        !data.is_empty(),
        "no training data: give --data DIR (or `data = [...]` in the config)"
    );
    let seq = match args.seq.or(file.seq) {
        Some(seq) => seq,
        None => {
            let first = data_sources(&data)?.remove(0).dir;
            steel_dataflow::pack::manifest::Manifest::load(&first)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .with_context(|| {
                    format!(
                        "{} is not a chunk directory (no manifest.json)",
                        first.display()
                    )
                })?
                .settings
                .block_size
        }
    };
    let steps = args.steps.or(file.steps).context("--steps is required")?;
    let resume = args.resume.is_some();
    let out = args
        .resume
        .clone()
        .flatten()
        .or(args.out.clone())
        .or(file.out.map(rel))
        .context("--out (or --resume DIR) is required")?;
    let micro_batch = args.micro_batch.or(file.micro_batch).unwrap_or(4);
    let checkpoint_every = args
        .checkpoint_every
        .or(file.checkpoint_every)
        .unwrap_or(100);
    anyhow::ensure!(
        steps > 0
            && micro_batch > 0
            && checkpoint_every > 0
            && args.nproc.or(file.nproc) != Some(0),
        "steps, micro_batch, checkpoint_every and nproc must be positive"
    );
    let lr = args.lr.or(file.lr).unwrap_or(3e-3);
    let min_lr = args.min_lr.or(file.min_lr).unwrap_or(lr / 10.0);
    let warmup = args.warmup.or(file.warmup).unwrap_or((steps / 10).max(1));
    let schedule = match args
        .schedule
        .clone()
        .or(file.schedule)
        .as_deref()
        .unwrap_or("cosine")
    {
        "cosine" => Schedule::Cosine {
            max_lr: lr,
            min_lr,
            warmup,
            total: steps,
        },
        "wsd" => Schedule::WarmupStableDecay {
            max_lr: lr,
            min_lr,
            warmup,
            total: steps,
            decay_steps: args
                .decay_steps
                .or(file.decay_steps)
                .unwrap_or((steps / 5).max(1)),
        },
        other => anyhow::bail!("unknown schedule `{other}`; expected cosine or wsd"),
    };

    // The model: a preset (its vocabulary from --tokenizer or --vocab-size), or an imported
    // HuggingFace directory's configuration and weights.
    let (mut config, init_params) = match args.init_from.clone().or(file.init_from.map(rel)) {
        Some(dir) => {
            let (config, _, params) = load_model(&dir).map_err(anyhow::Error::msg)?;
            (config, Some(params))
        }
        None => {
            let preset = args
                .preset
                .clone()
                .or(file.preset)
                .unwrap_or_else(|| "tiny-dense".into());
            (
                ModelConfig::preset(&preset).map_err(anyhow::Error::msg)?,
                None,
            )
        }
    };
    if let Some(tokenizer) = args.tokenizer.clone().or(file.tokenizer.map(rel)) {
        config.vocab_size = steel_dataflow::pack::tokenizer::load(&tokenizer)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .get_vocab_size(true);
    }
    if let Some(vocab) = args.vocab_size.or(file.vocab_size) {
        config.vocab_size = vocab;
    }
    let adamw = AdamWConfig {
        weight_decay: args.weight_decay.or(file.weight_decay).unwrap_or(0.1),
        ..AdamWConfig::default()
    };
    let validation = args
        .val_data
        .clone()
        .or(file.val_data.map(rel))
        .map(|dir| Validation {
            dir,
            every: args.eval_every.or(file.eval_every).unwrap_or(100),
            max_blocks: args.val_blocks.or(file.val_blocks),
        });
    let options = TrainOptions {
        config,
        data: data_sources(&data)?,
        seq,
        micro_batch,
        steps,
        schedule,
        adamw,
        clip: args.clip.or(file.clip).unwrap_or(1.0),
        seed: args.seed.or(file.seed).unwrap_or(42),
        out,
        checkpoint_every,
        keep: args.keep.or(file.keep).unwrap_or(3),
        validation,
        init_params,
        device: args
            .device
            .clone()
            .or(file.device)
            .as_deref()
            .unwrap_or("cpu")
            .parse()
            .map_err(anyhow::Error::msg)?,
        nproc: args.nproc.or(file.nproc).unwrap_or(1),
        nodes: nodes(&args)?,
    };
    let start = std::time::Instant::now();
    // Tokens seen before this run (a resumed run starts with some); every step adds the same
    // number of tokens, so that is the first report's count less one step's.
    let mut first_tokens: Option<u64> = None;
    // A bar on a terminal; otherwise (logs) a line every 10 steps.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = indicatif::ProgressBar::new(steps);
    if terminal {
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}")
                .expect("a valid template"),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut report = |m: &StepMetrics| {
        let before = *first_tokens.get_or_insert(m.tokens - m.tokens / m.step.max(1));
        let tokens_per_s = (m.tokens - before) as f64 / start.elapsed().as_secs_f64();
        let message = format!(
            "loss {:.4}  lr {:.2e}  |g| {:.3}  {:.0} tokens/s",
            m.loss, m.lr, m.grad_norm, tokens_per_s
        );
        bar.set_position(m.step);
        bar.set_message(message.clone());
        if !terminal && (m.step == 1 || m.step.is_multiple_of(10) || m.step == steps) {
            eprintln!("step {:>6}/{}  {message}", m.step, steps);
        }
    };
    let state = train_model(&options, resume, &mut report).map_err(anyhow::Error::msg)?;
    eprintln!(
        "{} steps, {} tokens; checkpoints and metrics.jsonl in {}",
        state.step,
        state.tokens,
        options.out.display()
    );
    Ok(())
}

fn run_eval(args: EvalArgs) -> Result<()> {
    let (config, layout, params) = load_model(&args.checkpoint).map_err(anyhow::Error::msg)?;
    let result = evaluate(&config, &layout, &params, &args.data, args.max_blocks)
        .map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        eprintln!(
            "loss {:.4} over {} tokens ({} blocks)",
            result.loss, result.tokens, result.blocks
        );
    }
    Ok(())
}

fn run_export_hf(args: ExportHfArgs) -> Result<()> {
    export_hf(&args.checkpoint, &args.output, args.tokenizer.as_deref())
        .map_err(anyhow::Error::msg)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

/// `DIR` or `DIR:WEIGHT` specs as loader sources.
fn data_sources(specs: &[String]) -> Result<Vec<DataSource>> {
    specs
        .iter()
        .map(|spec| match spec.rsplit_once(':') {
            Some((dir, weight)) => Ok(DataSource {
                dir: dir.into(),
                weight: weight
                    .parse()
                    .with_context(|| format!("weight in `{spec}`"))?,
            }),
            None => Ok(DataSource {
                dir: spec.into(),
                weight: 1.0,
            }),
        })
        .collect()
}

fn run_blocks(args: BlocksArgs) -> Result<()> {
    let sources = data_sources(&args.data)?;
    let mut loader = match &args.resume {
        Some(path) => {
            let state: LoaderState = serde_json::from_slice(
                &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("{} is not a loader state", path.display()))?;
            Loader::resume(&sources, &state, args.rank)?
        }
        None => Loader::open(&sources, args.block_size, args.seed, args.rank, args.world)?,
    };
    if args.add_new_chunks {
        eprintln!("{} new chunks joined", loader.add_new_chunks()?);
    }
    for _ in 0..args.take {
        let block = loader.next_block()?;
        let bytes: Vec<u8> = block.iter().flat_map(|t| t.to_le_bytes()).collect();
        println!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
    }
    if let Some(path) = &args.save {
        std::fs::write(path, serde_json::to_vec_pretty(&loader.state())?)
            .with_context(|| format!("writing {}", path.display()))?;
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

    eprintln!("\n== 3. clean with a data-juicer recipe (steel lm train, steel clean)");
    let converted = vec![converted_dir.display().to_string()];
    let model = dir.join("zh-char-3gram.arpa");
    let (arpa, _) = train_documents(&converted, 3, Unit::Char).map_err(anyhow::Error::msg)?;
    std::fs::write(&model, arpa).context("writing the demo language model")?;
    let recipe_path = dir.join("demo_clean.yaml");
    std::fs::write(&recipe_path, DEMO_RECIPE).context("writing the demo recipe")?;
    let recipe = Recipe::parse(DEMO_RECIPE).map_err(anyhow::Error::msg)?;
    let cleaned_dir = dir.join("cleaned");
    let mut clean_options = CleanOptions::new(&recipe_path, &cleaned_dir);
    clean_options.trace = 2;
    clean_options.resources.lm_model = Some(model);
    let report = clean(&converted, &recipe, &clean_options).context("cleaning the demo corpus")?;
    eprintln!("{report}");
    eprintln!("{}", score_against_truth(&data_dir, &cleaned_dir)?);

    eprintln!("\n== 3b. the incremental pipeline (steel run): 3 files, then 1 appended");
    run_cmd::demo_pipeline(&dir.join("pipeline"), &data_dir.join("corpus"))?;

    eprintln!("\n== 4. train a small byte-level BPE (steel tokenizer train) and pack (steel pack)");
    let cleaned = vec![cleaned_dir.display().to_string()];
    let tokenizer = dir.join("tokenizer.json");
    let texts = read_texts(&cleaned).context("reading the cleaned corpus")?;
    train(texts, 2000, &tokenizer).context("training the demo tokenizer")?;
    let mut pack_options = PackOptions::new(&tokenizer, dir.join("chunks"));
    pack_options.block_size = 256;
    pack_options.chunk_blocks = 64;
    let packed = pack(&cleaned, &pack_options).context("packing the demo corpus")?;
    print_pack_summary(&packed);

    eprintln!("\n== 5. train tiny-dense on the chunks for 100 steps (steel train, CPU reference)");
    let run_dir = dir.join("run");
    let options = TrainOptions {
        config: ModelConfig::preset("tiny-dense").map_err(anyhow::Error::msg)?,
        data: vec![DataSource {
            dir: dir.join("chunks"),
            weight: 1.0,
        }],
        seq: 256,
        micro_batch: 2,
        steps: 100,
        schedule: Schedule::Cosine {
            max_lr: 3e-3,
            min_lr: 3e-4,
            warmup: 10,
            total: 100,
        },
        adamw: AdamWConfig::default(),
        clip: 1.0,
        seed: 42,
        out: run_dir.clone(),
        checkpoint_every: 50,
        keep: 2,
        validation: None,
        init_params: None,
        device: steel_trainer::engine::Device::Cpu,
        nproc: 1,
        nodes: None,
    };
    let mut report = |m: &StepMetrics| {
        if m.step == 1 || m.step.is_multiple_of(20) {
            eprintln!("step {:>3}  loss {:.3}", m.step, m.loss);
        }
    };
    train_model(&options, false, &mut report).map_err(anyhow::Error::msg)?;
    eprintln!(
        "checkpoints, metrics.jsonl and loss.svg in {}",
        run_dir.display()
    );
    run_export_hf(ExportHfArgs {
        checkpoint: run_dir.join("step-00000100"),
        output: dir.join("hf"),
        tokenizer: Some(tokenizer.clone()),
    })?;

    eprintln!(
        "\n== done. On a GPU: build with `--features cuda` and train with `steel train --device cuda`."
    );
    eprintln!("everything is in {}", dir.display());
    Ok(())
}

/// The recipe `steel demo` cleans with (shipped in `recipes/`).
const DEMO_RECIPE: &str = include_str!("../recipes/demo_clean.yaml");

/// How the cleaned demo corpus compares with the generator's truth.
fn score_against_truth(
    data_dir: &std::path::Path,
    cleaned_dir: &std::path::Path,
) -> Result<String> {
    let truth = read_truth(data_dir).context("reading the demo truth")?;
    // Converted documents carry their source file and row; the truth names them the same way.
    let mut kept = std::collections::HashSet::new();
    for entry in std::fs::read_dir(cleaned_dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        {
            for line in std::fs::read_to_string(&path)?.lines() {
                let doc: serde_json::Value = serde_json::from_str(line)?;
                let file = doc["meta"]["file"].as_str().unwrap_or_default().to_string();
                let file = std::path::Path::new(&file)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                kept.insert((file, doc["meta"]["row"].as_u64()));
            }
        }
    }
    let removed = |pick: &dyn Fn(&Truth) -> bool| {
        let docs: Vec<&Truth> = truth.iter().filter(|t| pick(t)).collect();
        let gone = docs
            .iter()
            .filter(|t| {
                let file = std::path::Path::new(&t.file)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                !kept.contains(&(file, Some(t.row)))
            })
            .count();
        format!("{gone}/{}", docs.len())
    };
    Ok(format!(
        "against the truth: removed {} exact duplicates, {} near-duplicates, {} junk documents (too short or too long; the mappers cleaned the others), {} clean originals",
        removed(&|t| t.kind == DocKind::ExactDup),
        removed(&|t| t.kind == DocKind::NearDup),
        removed(&|t| t.kind == DocKind::Original && !t.junk.is_empty()),
        removed(&|t| t.kind == DocKind::Original && t.junk.is_empty()),
    ))
}

fn run_bench_pack(args: BenchPackArgs) -> Result<()> {
    let options = PackBenchOptions {
        samples: args.samples,
        tokenizer: args.tokenizer,
        work: args.work,
        copies: args.copies,
        threads: args.threads_list,
    };
    for line in bench_pack(&options).context("steel bench pack failed")? {
        println!("{}", serde_json::to_string(&line)?);
    }
    let chunks = options.work.join(format!(
        "chunks-{}",
        options.threads.first().copied().unwrap_or(1)
    ));
    let line = bench_loader(&chunks, 2048).context("loader benchmark failed")?;
    println!("{}", serde_json::to_string(&line)?);
    Ok(())
}

fn run_bench_train(args: BenchTrainArgs) -> Result<()> {
    let options = BenchTrainOptions {
        preset: args.preset,
        device: args.device.parse().map_err(anyhow::Error::msg)?,
        micro_batch: args.micro_batch,
        seq: args.seq,
        steps: args.steps,
        warmup: args.warmup,
    };
    let result = bench_train(&options)
        .map_err(anyhow::Error::msg)
        .context("steel bench train failed")?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

fn run_bench_clean(args: BenchCleanArgs) -> Result<()> {
    let options = CleanBenchOptions {
        samples: args.samples,
        recipe: args.recipe,
        work: args.work,
        copies: args.copies,
        op_copies: args.op_copies,
        threads: args.threads_list,
        per_op: !args.no_per_op,
        without: args.without,
    };
    let mut emit = |line: &_| match serde_json::to_string(line) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("cannot print a bench line: {e}"),
    };
    bench_clean(&options, &mut emit).context("steel bench clean failed")?;
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
