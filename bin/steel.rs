//! `steel`: the one command line of the Steel pipeline. Each subcommand parses its arguments
//! into a library type, calls the library and prints what it returned; no logic lives here.

mod bench_cmd;
mod data_cmd;
mod demo_cmd;
mod generate_cmd;
mod run_cmd;
mod serve;
mod sft_cmd;
mod train_cmd;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

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
    Convert(data_cmd::ConvertArgs),
    /// Generate a synthetic corpus with planted duplicates and junk, plus its ground truth.
    DemoData(data_cmd::DemoDataArgs),
    /// Step 2: clean unified documents with a data-juicer recipe and report what each rule did.
    Clean(data_cmd::CleanArgs),
    /// The incremental pipeline: convert, clean and deduplicate new files against the
    /// persisted state of every earlier run (timely/differential dataflow).
    Run(run_cmd::RunArgs),
    /// Take a source's documents back out of a pipeline's results (a negative change).
    Retract(run_cmd::RetractArgs),
    /// Merge a pipeline's on-disk dedup index into one segment (answers are unchanged).
    Compact(run_cmd::CompactArgs),
    /// What a pipeline's state directory holds.
    Status(run_cmd::StatusArgs),
    /// N-gram language models for perplexity_filter.
    #[command(subcommand)]
    Lm(data_cmd::LmCommand),
    /// Step 3: tokenize unified documents and pack them into LITPKDS chunk files.
    Pack(data_cmd::PackArgs),
    /// Tokenizer tools.
    #[command(subcommand)]
    Tokenizer(data_cmd::TokenizerCommand),
    /// Train a model on packed chunks (CPU reference, or a GPU with `--features cuda`).
    Train(Box<train_cmd::TrainArgs>),
    /// Supervised fine-tuning on chat data: `steel train`'s loop and flags, the loss on the
    /// assistant's replies only.
    Sft(Box<sft_cmd::SftArgs>),
    /// Preference training (DPO and its variants) on chosen/rejected pairs.
    Dpo(Box<sft_cmd::DpoArgs>),
    /// Mean next-token loss of a checkpoint over a chunk directory, or (`eval ceval`, `eval
    /// cmmlu`) its C-Eval / CMMLU accuracy, or (`eval chat`) its SFT loss over chat data.
    Eval(train_cmd::EvalArgs),
    /// Write a checkpoint as a HuggingFace model directory.
    #[command(subcommand)]
    Export(train_cmd::ExportCommand),
    /// Start training from a HuggingFace model directory.
    #[command(subcommand)]
    Import(train_cmd::ImportCommand),
    /// Generate text from a checkpoint on the CPU (KV cache, batched prompts, streaming).
    Generate(Box<generate_cmd::GenerateArgs>),
    /// Chat with a checkpoint in the terminal through the Qwen chat template.
    Chat(Box<generate_cmd::ChatArgs>),
    /// An OpenAI-compatible HTTP server over one checkpoint (chat and text completions,
    /// streamed as server-sent events; requests queued and batched).
    Serve(Box<serve::ServeArgs>),
    /// Show the blocks the training loader serves (one xxh3 per block), saving or resuming
    /// its state: for checking resume, appends and rank sharding from the shell.
    Blocks(train_cmd::BlocksArgs),
    /// Run every stage that exists end to end on generated data and say what it did.
    Demo(demo_cmd::DemoArgs),
    /// Throughput benchmarks; each prints JSON lines.
    #[command(subcommand)]
    Bench(bench_cmd::BenchCommand),
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
        Command::Convert(args) => data_cmd::run_convert(args),
        Command::DemoData(args) => data_cmd::run_demo_data(args),
        Command::Clean(args) => data_cmd::run_clean(args, cli.threads),
        Command::Run(args) => run_cmd::run_run(args),
        Command::Retract(args) => run_cmd::run_retract(args),
        Command::Compact(args) => run_cmd::run_compact(args),
        Command::Status(args) => run_cmd::run_status(args),
        Command::Lm(data_cmd::LmCommand::Train(args)) => data_cmd::run_lm_train(args),
        Command::Pack(args) => data_cmd::run_pack(args),
        Command::Tokenizer(data_cmd::TokenizerCommand::Train(args)) => {
            data_cmd::run_tokenizer_train(args)
        }
        Command::Train(args) => train_cmd::run_train(*args),
        Command::Sft(args) => sft_cmd::run_sft(*args),
        Command::Dpo(args) => sft_cmd::run_dpo(*args),
        Command::Eval(args) => train_cmd::run_eval(args),
        Command::Export(train_cmd::ExportCommand::Hf(args)) => train_cmd::run_export_hf(args),
        Command::Import(train_cmd::ImportCommand::Hf(args)) => train_cmd::run_import_hf(*args),
        Command::Generate(args) => generate_cmd::run_generate(*args),
        Command::Chat(args) => generate_cmd::run_chat(*args),
        Command::Serve(args) => serve::run_serve(*args),
        Command::Blocks(args) => train_cmd::run_blocks(args),
        Command::Demo(args) => demo_cmd::run_demo(args),
        Command::Bench(command) => bench_cmd::run(command),
    }
}
